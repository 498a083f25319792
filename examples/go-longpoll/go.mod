module example.com/config-refresh/go-longpoll

go 1.22
