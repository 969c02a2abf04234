from selfens.cli import main

main()
