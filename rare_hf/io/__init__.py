"""Data in and out: the bundled samples, training exports, the Hub push with its dataset card, and plots."""
