"""What a trained model learned: `ablate inspect` over trials' saved weights.

Beside `ablate.results` (which reads curves and never imports torch), this package loads
weights and so imports torch.
"""
