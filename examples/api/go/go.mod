module example.com/sagaapi

go 1.19
