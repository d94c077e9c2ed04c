package serializer_test

import (
	"fmt"
	"time"

	"github.com/gotasks/gotasks/serializer"
)

func ExampleMsgpack() {
	type Invoice struct {
		Number string    `json:"number"`
		Amount int64     `json:"amount"`
		Due    time.Time `json:"due"`
	}
	in := Invoice{Number: "INV-7", Amount: 12_50, Due: time.Date(2025, 1, 31, 0, 0, 0, 0, time.UTC)}

	var s serializer.Msgpack
	data, err := s.Marshal(in)
	if err != nil {
		panic(err)
	}
	var out Invoice
	if err := s.Unmarshal(data, &out); err != nil {
		panic(err)
	}
	fmt.Println(out.Number, out.Amount, out.Due.Equal(in.Due))
	// Output: INV-7 1250 true
}

func ExampleJSON() {
	data, err := serializer.JSON{}.Marshal(map[string]int{"retries": 3})
	if err != nil {
		panic(err)
	}
	fmt.Println(string(data))
	// Output: {"retries":3}
}

func ExampleByName() {
	s, err := serializer.ByName("json")
	if err != nil {
		panic(err)
	}
	fmt.Println(s.Name())

	_, err = serializer.ByName("xml")
	fmt.Println(err)
	// Output:
	// json
	// serializer: unknown format "xml" (want msgpack, json or one made known with serializer.Register)
}

// Values a format cannot hold are an error, never a panic.
func ExampleSerializer_Marshal_unsupported() {
	type Job struct {
		Done chan bool
	}
	_, err := serializer.Default.Marshal(Job{Done: make(chan bool)})
	fmt.Println(err)
	// Output: msgpack: encode serializer_test.Job: msgpack: Encode(unsupported chan bool)
}
