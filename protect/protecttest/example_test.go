package protecttest_test

import (
	"fmt"

	"github.com/cloisterfl/cloister/protect/protecttest"
)

// ExampleMutations lists the hostile variants the suite derives from a
// valid payload, here a 10-byte one with a 6-byte header. A scheme's fuzz
// targets can use them as seeds. (To run the whole suite, call Run from a
// test; see the package documentation.)
func ExampleMutations() {
	valid := []byte("CLPL\x01\x09abcd")
	must, may := 0, 0
	for _, m := range protecttest.Mutations(valid, 6) {
		if m.MayPass {
			may++
			continue
		}
		must++
		if must <= 8 || m.Name == "header byte 5 xor 0xff" {
			fmt.Printf("%-26s %q\n", m.Name, m.Bytes)
		}
	}
	fmt.Println(must, "must be rejected;", may, "must only not panic")
	// Output:
	// nil                        ""
	// empty                      ""
	// 9 garbage bytes            "S\xe7\x97%\xe9/R\xe1\xbf"
	// truncated to 1 of 10 bytes "C"
	// truncated to 2 of 10 bytes "CL"
	// truncated to 3 of 10 bytes "CLP"
	// truncated to 4 of 10 bytes "CLPL"
	// truncated to 5 of 10 bytes "CLPL\x01"
	// header byte 5 xor 0xff     "CLPL\x01\xf6abcd"
	// 27 must be rejected; 4 must only not panic
}
