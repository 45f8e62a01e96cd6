"""Network architectures, one module per paper family (`stylegan2`, ...), shared pieces in `layers`."""
