"""Offline training package (`python -m training COMMAND`): data preparation, GAN
augmentation, classifier training and int8 quantization. It imports `models`, never `app`.

The commands arrive with their issues; for now the package only reserves the namespace.
"""
