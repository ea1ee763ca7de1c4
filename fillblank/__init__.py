"""fillblank: fill-in-the-blank image captioning with Bidirectional Beam Search.

The library knows nothing of DVC; `stages/` wires it into the pipeline. Importing it
changes nothing in the process: no environment variables, no thread counts, no seeds.
"""
