"""The tiny study the end-to-end tests run: seq_digits, an 8-unit LSTM or GRU, plain vs heavy_ball, a few batches."""

TINY_SPACE = """
space:
  block:
    rnn:
      cell: [lstm, gru]
      hidden_size: 8
      rule:
        plain: {}
        heavy_ball: {mu: {low: 0.0, high: 0.9}, s: {low: 0.2, high: 1.0}}
train: {epochs: 1, batch_size: 64, max_batches: 4}
"""
