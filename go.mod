module github.com/tei-sidecar/tei-sidecar

go 1.26.0

require (
	github.com/alecthomas/kong v1.17.0
	github.com/joho/godotenv v1.5.1
)
