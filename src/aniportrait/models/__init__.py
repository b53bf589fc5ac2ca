"""Networks of the AniPortraitGAN generator, with the parameter names of the authors' release."""
