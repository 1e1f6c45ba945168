"""Blocks: ``nn.Module``s that receive an update rule. RNN cells, neural-ODE blocks and attention."""

from .attention import Attention, TransformerEncoder
from .ode import ODERNN, ODEBlock
from .rnn import RNN

__all__ = ["Attention", "TransformerEncoder", "ODEBlock", "ODERNN", "RNN"]
