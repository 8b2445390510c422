module tether.bench/loadgen-go

go 1.26
