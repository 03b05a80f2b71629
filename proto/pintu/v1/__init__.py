"""Generated code for ``package pintu.v1`` (do not edit; run ``make proto``)."""
