package emails_test

import (
	"context"
	"fmt"

	"github.com/gotasks/gotasks/examples/emails"
)

// The task's function, called directly (django-tasks' .call()).
func Example() {
	v, err := emails.Send.Call(context.Background(), emails.Email{To: "ann@example.com"})
	fmt.Println(v, err)
	// Output: sent to ann@example.com <nil>
}
