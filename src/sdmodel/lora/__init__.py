"""LoRA and LyCORIS files: what they are (``info``), which model they fit (``check``), renaming them
between namings (``convert``) and baking them into a model (``merge``).

Layers, lowest first: ``keys`` (tensors by target), ``names`` (namings), ``families`` (base-family
rules keyed by family id), ``modelmap`` (where targets land in a model), ``delta`` (the weight
change), ``info``; then ``check``, ``merge`` and ``convert``, which build on sdmodel.plan.
"""
