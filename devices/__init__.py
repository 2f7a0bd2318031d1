"""Device models: programming error, drift and read noise (see :mod:`devices.base`)."""
from devices.base import DeviceModel, DeviceParams
from devices.registry import available_models, get_model

__all__ = ["DeviceModel", "DeviceParams", "available_models", "get_model"]
