"""Training the models: the data they read (`data`), the one loop (`loop`), and what each
model brings to it (`captioners`, `infiller`)."""
