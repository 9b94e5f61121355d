"""rsft: rejection-sampling fine-tuning for factory models."""

__version__ = "0.1.0"
