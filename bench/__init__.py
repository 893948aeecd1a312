"""LSTM Bench harness: config -> data -> model (a backend) -> train and measure -> rows on disk -> report."""
