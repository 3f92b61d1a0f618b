"""Pretrained meta-initializations shipped with fewshot: safetensors weights + JSON manifests."""
