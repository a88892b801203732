module github.com/inclavare-containers/inclavare-go

go 1.26.8
