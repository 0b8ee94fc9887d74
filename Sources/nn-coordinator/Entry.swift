import NNCommands

@main
enum Entry {
    static func main() async { await CoordinatorCommand.main(nil) }
}
