"""HTTP routers of gpu_optimizer, one per resource."""
