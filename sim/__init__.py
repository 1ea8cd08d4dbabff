"""Golden models (the spec), cycle models and simulation runners for intformer's units."""
