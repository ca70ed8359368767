"""The pipeline tests run on the engine tests' small random model."""

from tests.engine.conftest import lite_model

__all__ = ["lite_model"]
