"""DHP: dynamic hybrid parallelism on jax.sharding sub-meshes."""
