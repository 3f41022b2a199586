package psi_test

import (
	"crypto/rand"
	"fmt"

	"github.com/cloisterfl/cloister/psi"
)

func Example() {
	session := []byte("federation manifest hash, run 1")
	hospital, _ := psi.NewKey(session, rand.Reader)
	insurer, _ := psi.NewKey(session, rand.Reader)
	res, err := psi.Run(
		psi.Party{Name: "hospital", IDs: []string{"ann", "bob", "cid", "dan"}, Key: hospital},
		[]psi.Party{{Name: "insurer", IDs: []string{"eve", "dan", "bob"}, Key: insurer}},
		psi.Options{})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Shared)
	fmt.Println("hospital rows", res.Rows[0], "insurer rows", res.Rows[1])
	// Output:
	// [bob dan]
	// hospital rows [1 3] insurer rows [2 1]
}
