package geo

//go:generate go run ./internal/gen -out data
