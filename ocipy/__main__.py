from ocipy.cli import main

main()
