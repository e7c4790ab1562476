"""The deterministic seeded world: recipes in, records out, the same bytes every time."""

from opsmerge_sandbox.world.computed_fields import derive_fields
from opsmerge_sandbox.world.generator import GenerationError, World, build_world
from opsmerge_sandbox.world.recipe import KeySpec, Recipe, RecipeError, key_status, load_recipe

__all__ = [
    "GenerationError",
    "KeySpec",
    "Recipe",
    "RecipeError",
    "World",
    "build_world",
    "derive_fields",
    "key_status",
    "load_recipe",
]
