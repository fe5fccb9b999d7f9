"""`python -m progprune_cli` runs the same CLI as the `progprune` script."""

from progprune_cli.cli import main

if __name__ == "__main__":
    main()
