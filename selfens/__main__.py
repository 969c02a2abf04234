from selfens.cli.main import main

main()
