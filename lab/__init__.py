"""`make lab`: the whole platform on local containers, driven through the real inventory path."""
