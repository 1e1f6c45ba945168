"""Rules a block must refuse by name, shared by the RNN and attention tests."""

from momsearch.rules import Filter, Normaliser, Rule


class Opaque(Rule):
    """A rule that is no linear filter at all."""

    name = "opaque"


class LookAhead(Rule):
    """A linear filter with a look-ahead, which has a meaning in attention only."""

    name = "look_ahead"

    def filter(self, block):
        return Filter(scale=0.5, decay=0.5, lookahead=abs)


class VaryingAdam(Rule):
    """A normalised drive whose decay changes per step: no RNN or attention path computes it."""

    name = "varying_adam"

    def filter(self, block):
        return Filter(scale=0.5, varying=abs)

    def normaliser(self):
        return Normaliser(0.9, 1e-8)
