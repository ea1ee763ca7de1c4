"""fillblank: fill-in-the-blank image captioning with Bidirectional Beam Search.

The library knows nothing of DVC; `stages/` wires it into the pipeline.
"""
