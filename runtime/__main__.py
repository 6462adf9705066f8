from serviceorders.cli import main

main()
