"""witin_nn models on the WTM2101-class chip: quantization formulas and exact layer semantics."""
from simulator.witin.chip import WITIN_KEYS, WitinChipLayer

__all__ = ["WITIN_KEYS", "WitinChipLayer"]
