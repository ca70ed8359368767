"""The CLI tests reuse the training tests' tiny datasets and config builder."""

from tests.training.conftest import make_config, tiny_train_root, tiny_val_root

__all__ = ["make_config", "tiny_train_root", "tiny_val_root"]
