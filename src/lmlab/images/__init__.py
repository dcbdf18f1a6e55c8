"""Images in lmlab: reading them (files.py) and image towers, one file each (cnn.py, vit.py).

An image tower maps a batch of images (B, C, S, S) to feature vectors (B, dimension); a
CLIP-style run (lmlab.clip) projects its features and a text encoder's into one space.
"""

from importlib import import_module

# tower name -> (module, model class, config class)
TOWERS = {
    "cnn": ("lmlab.images.cnn", "CNN", "CNNConfig"),
    "vit": ("lmlab.images.vit", "ViT", "ViTConfig"),
}


def tower_classes(name: str):
    """The model class, its config dataclass and its PRESETS for a tower name (cnn, vit)."""
    from lmlab.errors import LmlabError

    if name not in TOWERS:
        raise LmlabError(
            f"unknown image encoder {name!r}; one of {', '.join(TOWERS)}", param="image_encoder"
        )
    module_name, model, config = TOWERS[name]
    module = import_module(module_name)
    return getattr(module, model), getattr(module, config), module.PRESETS
