"""Several calibrated cameras seen as one: rigs, frame synchronisation, triangulation, 3D analysis."""
