"""The in-browser site: `wave-unet-export --web DIR` (site.py) and a local server for it (serve.py)."""
