"""A study: a grid of models x methods x N as ordinary runs (`grid`), its progress line (`progress`);
`selfens study` is `selfens.cli.study`."""
