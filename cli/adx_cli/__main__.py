from adx_cli.main import main

main()
