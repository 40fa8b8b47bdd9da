"""PyCalc-v0: word problems solved with a persistent Python interpreter."""

from .env import PyCalcEnv

__all__ = ["PyCalcEnv"]
