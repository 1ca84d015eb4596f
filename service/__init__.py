"""densehead: real-time 3D face reconstruction on the CPU.

>>> from service import Reconstructor, load_image
>>> faces = Reconstructor().process(load_image("photo.jpg"))

The names below are imported on first use (PEP 562), so ``import service`` and
the imports of its submodules load nothing heavy and change no setting.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "Reconstructor": "api",
    "Face": "pipeline",
    "FacePipeline": "pipeline",
    "InputError": "image_io",
    "load_image": "image_io",
    "to_bgr_uint8": "image_io",
    "MissingAssetError": "assets",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'service' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
