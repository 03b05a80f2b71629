"""Generated code for the sample agencies' contracts (do not edit; run ``make proto``)."""
