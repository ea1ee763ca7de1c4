"""The pipeline's stages, one module each; dvc.yaml runs them as `python -m stages.<name>`."""
