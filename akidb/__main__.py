from akidb.cli import main

main()
