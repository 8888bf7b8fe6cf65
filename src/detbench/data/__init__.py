"""Data stage: synthetic scenes, YOLO datasets, VOC conversion, label checks, image decoding."""
