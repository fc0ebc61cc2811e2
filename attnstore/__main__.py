from attnstore.cli import main

main()
