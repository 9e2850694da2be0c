"""Console entry points. Each is a thin ``main(argv) -> int``; subcommands import lazily."""
