"""Network layers shared by several model families (equalized linear/conv, modulated conv, minibatch std).

Each family keeps its own networks in `gancli.families.<name>.nets`."""
