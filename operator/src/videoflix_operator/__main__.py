from videoflix_operator.main import run

run()
