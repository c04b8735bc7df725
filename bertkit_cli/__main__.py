from bertkit_cli import main

main()
