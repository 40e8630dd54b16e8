module example.com/stt-example

go 1.19
